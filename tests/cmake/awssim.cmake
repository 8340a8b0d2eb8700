# AWS simulator tests (tests/awssim/): one ctest entry per Python test method.
# test_unit_*.py -> label "unit" (no AWS CLI needed); test_cli_*.py -> label "cloud" (drive
# /usr/bin/aws against a fresh simulator); methods named test_slow_* also get label "slow".

# kiln_add_awssim_test(NAME <name> COMMAND <cmd> [args...] [LABELS <extra labels>]
#                      [SIM_ARGS <with-sim.sh options>])
# Runs <cmd> under tests/awssim/with-sim.sh: a fresh simulator, with AWSSIM_ENDPOINT and the
# AWS_* variables exported.  Label "cloud".  For C and shell tests of the cloud client.
function(kiln_add_awssim_test)
    cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "COMMAND;LABELS;SIM_ARGS" ${ARGN})
    if(NOT ARG_TIMEOUT)
        set(ARG_TIMEOUT 600)
    endif()
    add_test(NAME ${ARG_NAME}
             COMMAND ${PROJECT_SOURCE_DIR}/tests/awssim/with-sim.sh ${ARG_SIM_ARGS} --
                     ${ARG_COMMAND})
    set_tests_properties(${ARG_NAME} PROPERTIES LABELS "cloud;${ARG_LABELS}"
                         TIMEOUT ${ARG_TIMEOUT})
endfunction()

find_package(Python3 COMPONENTS Interpreter)
if(NOT Python3_Interpreter_FOUND)
    message(WARNING "python3 not found: AWS simulator tests are not registered")
    return()
endif()
set(awssim_dir ${PROJECT_SOURCE_DIR}/tests/awssim)
file(GLOB awssim_tests CONFIGURE_DEPENDS ${awssim_dir}/test_*.py)
foreach(src ${awssim_tests})
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${src})
    get_filename_component(module ${src} NAME_WE)
    if(module MATCHES "^test_cli_")
        set(labels "cloud")
        set(timeout 600)
    else()
        set(labels "unit")
        set(timeout 120)
    endif()
    file(READ ${src} text)
    string(REGEX MATCHALL "\nclass [A-Za-z0-9_]+|\n    def test_[A-Za-z0-9_]+" items "${text}")
    set(cls "")
    foreach(item ${items})
        if(item MATCHES "class ([A-Za-z0-9_]+)")
            set(cls ${CMAKE_MATCH_1})
        elseif(item MATCHES "def (test_[A-Za-z0-9_]+)")
            set(method ${CMAKE_MATCH_1})
            set(id ${module}.${cls}.${method})
            set(test_labels "${labels}")
            set(test_timeout ${timeout})
            if(method MATCHES "^test_slow_")
                # Long-running (large objects): also labelled slow, so "-L cloud -LE slow"
                # keeps the quick set.
                list(APPEND test_labels slow)
                set(test_timeout 1800)
            endif()
            add_test(NAME awssim.${id}
                     COMMAND ${Python3_EXECUTABLE} -m unittest -v ${id}
                     WORKING_DIRECTORY ${awssim_dir})
            set_tests_properties(awssim.${id} PROPERTIES LABELS "${test_labels}"
                                 TIMEOUT ${test_timeout} ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
        endif()
    endforeach()
endforeach()

# The SigV4 suites' cases are generated test methods: one ctest entry per case as well.
function(awssim_vector_test id)
    add_test(NAME awssim.${id} COMMAND ${Python3_EXECUTABLE} -m unittest -v ${id}
             WORKING_DIRECTORY ${awssim_dir})
    set_tests_properties(awssim.${id} PROPERTIES LABELS "unit" TIMEOUT 60
                         ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
endfunction()
file(GLOB crt_cases LIST_DIRECTORIES true ${awssim_dir}/testdata/sigv4/aws-c-auth-v4/*)
foreach(dir ${crt_cases})
    if(IS_DIRECTORY ${dir})
        get_filename_component(case ${dir} NAME)
        string(REPLACE "-" "_" case ${case})
        awssim_vector_test(test_unit_sigv4.CrtSuite.test_${case})
    endif()
endforeach()
file(GLOB_RECURSE boto_cases RELATIVE ${awssim_dir}/testdata/sigv4/botocore-aws4_testsuite
     ${awssim_dir}/testdata/sigv4/botocore-aws4_testsuite/*.sreq)
foreach(f ${boto_cases})
    get_filename_component(rel ${f} DIRECTORY)
    string(REPLACE "/" "_" case ${rel})
    string(REPLACE "-" "_" case ${case})
    awssim_vector_test(test_unit_sigv4.BotocoreSuite.test_${case})
endforeach()

# Shell scripts in tests/awssim/sh/, each run under with-sim.sh (one ctest entry per script).
file(GLOB awssim_sh CONFIGURE_DEPENDS ${awssim_dir}/sh/*.sh)
foreach(script ${awssim_sh})
    get_filename_component(name ${script} NAME_WE)
    kiln_add_awssim_test(NAME awssim.sh.${name} COMMAND ${script})
endforeach()
