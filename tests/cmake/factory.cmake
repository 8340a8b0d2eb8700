# Factory tests beyond the unit cases found automatically: the CLI test runs the built `kiln`.
if(TARGET factory-cli-test)
    add_dependencies(factory-cli-test kiln)
endif()

# The whole lifecycle on real guests (libvirt + the tiny image, TCG): label vm. The vm fixture
# (tests/cmake/vm.cmake) starts libvirt's daemons and builds the tiny image; guests of vm tests
# never overlap (RESOURCE_LOCK vm-guests).
if(CMOCKA_FOUND AND LIBVIRT_FOUND)
    set(src ${PROJECT_SOURCE_DIR}/tests/vm/factory-build-vm-test.c)
    add_executable(factory-build-vm-test ${src})
    target_include_directories(factory-build-vm-test PRIVATE ${PROJECT_SOURCE_DIR}/tests)
    target_link_libraries(factory-build-vm-test PRIVATE kiln_factory PkgConfig::LIBVIRT
                          PkgConfig::CMOCKA)
    add_dependencies(factory-build-vm-test kiln)
    file(READ ${src} text)
    string(REGEX MATCHALL "cmocka_unit_test[a-z_]*\\([ \t\r\n]*[A-Za-z0-9_]+" calls "${text}")
    foreach(call ${calls})
        string(REGEX REPLACE ".*\\([ \t\r\n]*" "" case ${call})
        add_test(NAME factory-build-vm-test.${case} COMMAND factory-build-vm-test)
        set_tests_properties(factory-build-vm-test.${case} PROPERTIES
            ENVIRONMENT "KILN_TEST_CASE=${case};KILN_SOURCE_DIR=${PROJECT_SOURCE_DIR};KILN_BUILD_DIR=${PROJECT_BINARY_DIR}"
            LABELS "vm" FIXTURES_REQUIRED vm RESOURCE_LOCK vm-guests TIMEOUT 900)
    endforeach()
endif()
