# The guest agent protocol: a time-boxed libFuzzer run of the frame decoder (KILN_FUZZ builds).
# New inputs go to the build tree; copy the interesting ones into tests/fuzz/corpus/frame/.
if(KILN_FUZZ AND TARGET agent-frame-fuzz)
    set(frame_corpus ${PROJECT_BINARY_DIR}/fuzz-corpus/frame)
    file(MAKE_DIRECTORY ${frame_corpus})
    add_test(NAME agent-frame-fuzz.run
             COMMAND agent-frame-fuzz -max_total_time=120 -max_len=8192 -rss_limit_mb=1024
                     ${frame_corpus} ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/frame)
    set_tests_properties(agent-frame-fuzz.run PROPERTIES LABELS "fuzz;slow" TIMEOUT 300)
endif()
