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
