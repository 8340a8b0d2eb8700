# The component engine's command line (kiln-agent validate/run) end to end, and its benchmark.
foreach(case validate-ok validate-errors run-example run-failed run-reboot run-reboot-default-state usage)
    add_test(NAME agent-cli.${case}
             COMMAND ${PROJECT_SOURCE_DIR}/tests/engine/cli-test.sh $<TARGET_FILE:kiln-agent>
                     ${PROJECT_SOURCE_DIR} ${case})
    set_tests_properties(agent-cli.${case} PROPERTIES LABELS "unit" TIMEOUT 60)
endforeach()

add_test(NAME agent-bench.engine-overhead
         COMMAND ${PROJECT_SOURCE_DIR}/bench/engine-overhead.sh $<TARGET_FILE:kiln-agent> 1000)
set_tests_properties(agent-bench.engine-overhead PROPERTIES LABELS "slow" TIMEOUT 900)
