# Parity of Kiln's AWS client with the AWS CLI (tests/parity/parity.py): each scenario runs
# through kiln-aws against one simulator and through /usr/bin/aws against another (same seed);
# the normalised end states must be equal. One ctest entry per scenario (label cloud), and the
# comparison's self-test (label unit: no simulator, no CLI) proving it detects differences.
find_package(Python3 COMPONENTS Interpreter)
if(NOT Python3_Interpreter_FOUND OR NOT TARGET kiln-aws)
    message(WARNING "python3 or kiln-aws missing: parity tests are not registered")
    return()
endif()
set(parity_py ${PROJECT_SOURCE_DIR}/tests/parity/parity.py)
add_test(NAME parity.self_test COMMAND ${Python3_EXECUTABLE} ${parity_py} --self-test)
set_tests_properties(parity.self_test PROPERTIES LABELS "unit" TIMEOUT 60
                     ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
foreach(scenario ec2_instances ec2_images s3_objects ebs_register import_snapshot)
    add_test(NAME parity.${scenario}
             COMMAND ${Python3_EXECUTABLE} ${parity_py} --kiln-aws $<TARGET_FILE:kiln-aws>
                     ${scenario})
    set_tests_properties(parity.${scenario} PROPERTIES LABELS "cloud" TIMEOUT 300
                         ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
endforeach()
# The same end-to-end run with one tag value changed on the kiln-aws side: must be reported.
add_test(NAME parity.detects_difference
         COMMAND ${Python3_EXECUTABLE} ${parity_py} --kiln-aws $<TARGET_FILE:kiln-aws>
                 --perturb ec2_instances)
set_tests_properties(parity.detects_difference PROPERTIES LABELS "cloud" TIMEOUT 300
                     ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
