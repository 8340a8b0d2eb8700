# Cloud (AWS client) test registrations: one ctest entry per SigV4 suite case, and the
# integration tests against the AWS simulator (label cloud).
if(TARGET cloud-sigv4-test)
    file(GLOB_RECURSE sigv4_markers CONFIGURE_DEPENDS
         ${PROJECT_SOURCE_DIR}/tests/data/sigv4/botocore/*.req
         ${PROJECT_SOURCE_DIR}/tests/data/sigv4/aws-c-auth/*/context.json)
    foreach(marker ${sigv4_markers})
        get_filename_component(dir ${marker} DIRECTORY)
        file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR}/tests/data/sigv4 ${dir})
        string(REPLACE "/" "." case ${rel})
        add_test(NAME cloud-sigv4.${case} COMMAND cloud-sigv4-test)
        set_tests_properties(cloud-sigv4.${case} PROPERTIES
            ENVIRONMENT "KILN_TEST_CASE=sigv4_suite_one;KILN_SIGV4_CASE=${dir};KILN_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
            LABELS "unit" TIMEOUT 60)
    endforeach()
endif()

# Integration tests against the AWS simulator (tests/awssim/): one ctest entry per case,
# label "cloud". Each case starts and stops its own simulator.
if(CMOCKA_FOUND AND EXISTS ${PROJECT_SOURCE_DIR}/tests/awssim/awssim.py)
    set(src ${PROJECT_SOURCE_DIR}/cloud/tests/sim-itest.c)
    add_executable(cloud-sim-itest ${src})
    target_include_directories(cloud-sim-itest PRIVATE ${PROJECT_SOURCE_DIR}/tests)
    target_link_libraries(cloud-sim-itest PRIVATE kiln_cloud PkgConfig::CMOCKA)
    file(READ ${src} text)
    string(REGEX MATCHALL "cmocka_unit_test[a-z_]*\\([ \t\r\n]*[A-Za-z0-9_]+" calls "${text}")
    foreach(call ${calls})
        string(REGEX REPLACE ".*\\([ \t\r\n]*" "" case ${call})
        add_test(NAME cloud-sim-itest.${case} COMMAND cloud-sim-itest)
        set_tests_properties(cloud-sim-itest.${case} PROPERTIES
            ENVIRONMENT "KILN_TEST_CASE=${case};KILN_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
            LABELS "cloud" TIMEOUT 600)
    endforeach()
endif()

# The EBS upload benchmark, small, so the script keeps working (it checks the snapshot byte
# for byte against the image and needs /usr/bin/aws).
if(EXISTS ${PROJECT_SOURCE_DIR}/tests/awssim/awssim.py AND TARGET kiln-aws)
    add_test(NAME cloud-bench-ebs-upload-smoke COMMAND ${PROJECT_SOURCE_DIR}/bench/ebs-upload.sh)
    set_tests_properties(cloud-bench-ebs-upload-smoke PROPERTIES
        ENVIRONMENT "KILN_BUILD_DIR=${PROJECT_BINARY_DIR};BENCH_SIZE_MIB=64;BENCH_ALLOC_MIB=20"
        LABELS "cloud" TIMEOUT 300)
endif()
