# VM tests (label vm): real guests under libvirt. A fixture starts libvirt's daemons when nothing
# runs them and builds (or finds cached) the tiny image; each test then boots guests from it.
# Tests of one file never overlap (RESOURCE_LOCK vm-guests): at most two guests run at once.
add_test(NAME vm-setup COMMAND ${PROJECT_SOURCE_DIR}/tests/vm/setup ${PROJECT_BINARY_DIR})
set_tests_properties(vm-setup PROPERTIES LABELS "vm" FIXTURES_SETUP vm TIMEOUT 600)

function(kiln_add_vm_test source)
    cmake_parse_arguments(ARG "" "" "LIBS;LABELS;SETUP" ${ARGN})
    get_filename_component(name ${source} NAME_WE)
    add_executable(${name} ${source})
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
    target_link_libraries(${name} PRIVATE ${ARG_LIBS} PkgConfig::CMOCKA)
    file(READ ${source} text)
    string(REGEX MATCHALL "cmocka_unit_test[a-z_]*\\([ \t\r\n]*[A-Za-z0-9_]+" calls "${text}")
    foreach(call ${calls})
        string(REGEX REPLACE ".*\\([ \t\r\n]*" "" case ${call})
        add_test(NAME ${name}.${case} COMMAND ${name})
        set_tests_properties(${name}.${case} PROPERTIES
            ENVIRONMENT "KILN_TEST_CASE=${case};KILN_SOURCE_DIR=${PROJECT_SOURCE_DIR};KILN_BUILD_DIR=${PROJECT_BINARY_DIR}"
            LABELS "vm;${ARG_LABELS}" FIXTURES_REQUIRED "vm;${ARG_SETUP}" RESOURCE_LOCK vm-guests
            TIMEOUT 1800)
    endforeach()
endfunction()

if(CMOCKA_FOUND)
    kiln_add_vm_test(${PROJECT_SOURCE_DIR}/tests/vm/drivers-libvirt-vm-test.c LIBS kiln_images)
    # Import needs the debian-12 image (minutes to build the first time).
    add_test(NAME vm-setup-debian COMMAND ${CMAKE_COMMAND} -E env KILN_IMAGES=debian-12
             ${PROJECT_SOURCE_DIR}/scripts/prepare-images ${PROJECT_BINARY_DIR})
    set_tests_properties(vm-setup-debian PROPERTIES LABELS "vm;slow" FIXTURES_SETUP vm-debian
                         TIMEOUT 3600)
    kiln_add_vm_test(${PROJECT_SOURCE_DIR}/tests/vm/images-import-vm-test.c LIBS kiln_images
                     LABELS slow SETUP vm-debian)
    kiln_add_vm_test(${PROJECT_SOURCE_DIR}/tests/vm/images-boot-vm-test.c LIBS kiln_images
                     LABELS slow SETUP vm-debian)
endif()

# The boot benchmark's helper (bench/boot.sh).
add_executable(kiln-bench-boot ${PROJECT_SOURCE_DIR}/bench/boot-bench.c)
target_link_libraries(kiln-bench-boot PRIVATE kiln_images)
