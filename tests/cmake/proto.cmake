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

# The agent over a real virtio-serial port: QEMU (TCG) boots the host kernel into an initramfs
# that runs kiln-agent serve --port (tests/vm/agent-initramfs.sh). Label vm: minutes, not seconds.
if(CMOCKA_FOUND)
    add_executable(drivers-agent-vm-test ${PROJECT_SOURCE_DIR}/tests/vm/drivers-agent-vm-test.c)
    target_include_directories(drivers-agent-vm-test PRIVATE ${PROJECT_SOURCE_DIR}/tests)
    target_link_libraries(drivers-agent-vm-test PRIVATE kiln_drivers PkgConfig::CMOCKA)
    add_dependencies(drivers-agent-vm-test kiln-agent)
    foreach(case test_agent_over_virtio_serial test_reboot_and_resume_in_a_real_guest)
        add_test(NAME drivers-agent-vm-test.${case} COMMAND drivers-agent-vm-test)
        set_tests_properties(drivers-agent-vm-test.${case} PROPERTIES
            LABELS "vm" RESOURCE_LOCK vm-guests TIMEOUT 900
            ENVIRONMENT "KILN_TEST_CASE=${case};KILN_SOURCE_DIR=${PROJECT_SOURCE_DIR};KILN_AGENT_BIN=$<TARGET_FILE:kiln-agent>")
    endforeach()
endif()
