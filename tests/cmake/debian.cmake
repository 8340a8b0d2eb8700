# The debian-12 base image (images/debian-12/), image import and inspection: VM tests, labels
# vm and slow. They need the built image: fixture vm-debian (vm-setup-debian in vm.cmake runs
# scripts/prepare-images for debian-12, about 5 minutes the first time, cached after). One guest
# at a time (RESOURCE_LOCK vm-guests, shared with the other VM tests).
if(CMOCKA_FOUND)
    foreach(t images-debian-vm-test:test_debian_disk_layout,test_debian_packages
              images-import-debian-vm-test:test_import_raw_into_catalog)
        string(REPLACE ":" ";" parts ${t})
        list(GET parts 0 name)
        list(GET parts 1 cases)
        string(REPLACE "," ";" cases ${cases})
        add_executable(${name} ${PROJECT_SOURCE_DIR}/tests/vm/${name}.c)
        target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
        target_link_libraries(${name} PRIVATE kiln_images PkgConfig::CMOCKA)
        foreach(case ${cases})
            add_test(NAME ${name}.${case} COMMAND ${name})
            set_tests_properties(${name}.${case} PROPERTIES
                ENVIRONMENT "KILN_TEST_CASE=${case};KILN_SOURCE_DIR=${PROJECT_SOURCE_DIR};KILN_BUILD_DIR=${PROJECT_BINARY_DIR}"
                LABELS "vm;slow" FIXTURES_REQUIRED vm-debian RESOURCE_LOCK vm-guests
                TIMEOUT 1200)
        endforeach()
    endforeach()
endif()

# Real boots under TCG, timed from the serial console: through GRUB with SeaBIOS, through GRUB
# with OVMF (removable path), and Kiln's direct kernel boot.
foreach(mode bios uefi direct)
    add_test(NAME images-debian-boot-${mode}
             COMMAND ${PROJECT_SOURCE_DIR}/images/debian-12/boot-test ${mode})
    set_tests_properties(images-debian-boot-${mode} PROPERTIES LABELS "vm;slow"
        FIXTURES_REQUIRED vm-debian RESOURCE_LOCK vm-guests TIMEOUT 1200)
endforeach()
