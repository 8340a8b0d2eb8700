# S3Download / S3Upload end to end: the real kiln-agent (hooks through cloud/'s S3 client) runs
# component documents against a fresh AWS simulator; /usr/bin/aws checks objects and bytes.
# One ctest entry per case of tests/data/s3-modules/s3-modules-test.sh, label "cloud".
set(s3mod_script ${PROJECT_SOURCE_DIR}/tests/data/s3-modules/s3-modules-test.sh)
foreach(case download-one download-prefix overwrite-false missing-object upload-file
             upload-folder wrong-secret expected-owner profile-config limits)
    kiln_add_awssim_test(NAME s3-modules.${case}
                         COMMAND ${s3mod_script} $<TARGET_FILE:kiln-agent> ${case}
                         TIMEOUT 300)
endforeach()
# The instance role's keys (served by a local IMDSv2 stand-in) are known to the simulator.
kiln_add_awssim_test(NAME s3-modules.instance-credentials
                     COMMAND ${s3mod_script} $<TARGET_FILE:kiln-agent> instance-credentials
                     SIM_ARGS --credentials AKIDKILNIMDS:imds-secret:imds-session
                     TIMEOUT 300)
