# VM test of a job's whole-time limit (tests/vm/factory-job-timeout-vm-test.c): a build on the
# tiny image whose test phase hangs, ended by the test stage's limit through the agent's cancel.
# Label vm; the vm fixture (tests/cmake/vm.cmake) starts libvirt and prepares the tiny image;
# one guest at a time with the other VM tests (RESOURCE_LOCK vm-guests).
if(CMOCKA_FOUND AND LIBVIRT_FOUND)
    set(src ${PROJECT_SOURCE_DIR}/tests/vm/factory-job-timeout-vm-test.c)
    add_executable(factory-job-timeout-vm-test ${src})
    target_include_directories(factory-job-timeout-vm-test PRIVATE ${PROJECT_SOURCE_DIR}/tests)
    target_link_libraries(factory-job-timeout-vm-test PRIVATE kiln_factory PkgConfig::LIBVIRT
                          PkgConfig::CMOCKA)
    file(READ ${src} text)
    string(REGEX MATCHALL "cmocka_unit_test[a-z_]*\\([ \t\r\n]*[A-Za-z0-9_]+" calls "${text}")
    foreach(call ${calls})
        string(REGEX REPLACE ".*\\([ \t\r\n]*" "" case ${call})
        add_test(NAME factory-job-timeout-vm-test.${case} COMMAND factory-job-timeout-vm-test)
        set_tests_properties(factory-job-timeout-vm-test.${case} PROPERTIES
            ENVIRONMENT "KILN_TEST_CASE=${case};KILN_SOURCE_DIR=${PROJECT_SOURCE_DIR};KILN_BUILD_DIR=${PROJECT_BINARY_DIR}"
            LABELS "vm" FIXTURES_REQUIRED vm RESOURCE_LOCK vm-guests TIMEOUT 600)
    endforeach()
endif()
