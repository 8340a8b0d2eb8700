# Test registration helpers.
#
# kiln_add_unit_test(<source> LIBS <targets...>): one cmocka executable, and one ctest entry per
# cmocka_unit_test*(case) found in the source, so that ctest's summary counts cases, not files.
# Each entry runs the binary with KILN_TEST_CASE=<case>; tests/kiln-test.h fails the run when
# that name matches no case, so a renamed case cannot silently pass.
function(kiln_add_unit_test source)
    cmake_parse_arguments(ARG "" "" "LIBS;LABELS" ${ARGN})
    get_filename_component(name ${source} NAME_WE)
    add_executable(${name} ${source})
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
    target_link_libraries(${name} PRIVATE ${ARG_LIBS} PkgConfig::CMOCKA)
    file(READ ${source} text)
    string(REGEX MATCHALL "cmocka_unit_test[a-z_]*\\([ \t\r\n]*[A-Za-z0-9_]+" calls "${text}")
    if(NOT calls)
        message(FATAL_ERROR "${source}: no cmocka_unit_test() cases found")
    endif()
    foreach(call ${calls})
        string(REGEX REPLACE ".*\\([ \t\r\n]*" "" case ${call})
        add_test(NAME ${name}.${case} COMMAND ${name})
        set_tests_properties(${name}.${case} PROPERTIES
            ENVIRONMENT "KILN_TEST_CASE=${case};KILN_SOURCE_DIR=${PROJECT_SOURCE_DIR};KILN_BUILD_DIR=${PROJECT_BINARY_DIR}"
            LABELS "unit;${ARG_LABELS}" TIMEOUT 120)
    endforeach()
endfunction()

# kiln_add_fuzz_target(<source> LIBS <targets...> CORPUS <dir>): with KILN_FUZZ a libFuzzer
# binary; in every build a replay binary that feeds each corpus file once, run by ctest.
function(kiln_add_fuzz_target source)
    cmake_parse_arguments(ARG "" "CORPUS" "LIBS" ${ARGN})
    get_filename_component(name ${source} NAME_WE)
    add_executable(${name}-replay ${source} ${PROJECT_SOURCE_DIR}/tests/fuzz/replay-main.c)
    target_link_libraries(${name}-replay PRIVATE ${ARG_LIBS})
    add_test(NAME ${name}.replay COMMAND ${name}-replay ${ARG_CORPUS})
    set_tests_properties(${name}.replay PROPERTIES LABELS "fuzz" TIMEOUT 300)
    if(KILN_FUZZ)
        add_executable(${name} ${source})
        target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
        target_link_options(${name} PRIVATE -fsanitize=fuzzer)
        target_link_libraries(${name} PRIVATE ${ARG_LIBS})
    endif()
endfunction()
