# End-to-end VM tests of `kiln build` (tests/vm/factory-e2e-test.c): reboots, a boot that never
# reaches the agent, two builds at once, a hung step; libvirt + the tiny image under TCG. Label
# vm; the vm fixture (tests/cmake/vm.cmake) starts libvirt and prepares the tiny image. They
# share the vm-guests lock with the other VM tests: one test at a time, at most two guests (the
# parallel-builds case runs two).
if(CMOCKA_FOUND AND LIBVIRT_FOUND)
    set(src ${PROJECT_SOURCE_DIR}/tests/vm/factory-e2e-test.c)
    add_executable(factory-e2e-test ${src})
    target_include_directories(factory-e2e-test PRIVATE ${PROJECT_SOURCE_DIR}/tests)
    target_link_libraries(factory-e2e-test PRIVATE kiln_factory PkgConfig::LIBVIRT
                          PkgConfig::CMOCKA)
    add_dependencies(factory-e2e-test kiln)
    file(READ ${src} text)
    string(REGEX MATCHALL "cmocka_unit_test[a-z_]*\\([ \t\r\n]*[A-Za-z0-9_]+" calls "${text}")
    foreach(call ${calls})
        string(REGEX REPLACE ".*\\([ \t\r\n]*" "" case ${call})
        add_test(NAME factory-e2e-test.${case} COMMAND factory-e2e-test)
        set_tests_properties(factory-e2e-test.${case} PROPERTIES
            ENVIRONMENT "KILN_TEST_CASE=${case};KILN_SOURCE_DIR=${PROJECT_SOURCE_DIR};KILN_BUILD_DIR=${PROJECT_BINARY_DIR}"
            LABELS "vm" FIXTURES_REQUIRED vm RESOURCE_LOCK vm-guests TIMEOUT 900)
    endforeach()
endif()
