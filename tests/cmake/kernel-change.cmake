# A component replaces the debian-12 image's kernel; the test stage must boot the new one through
# the image's firmware and GRUB (tests/vm/kiln-kernel-change-debian.sh). Needs the debian-12 image
# (fixture vm-debian, labels vm and slow like the other debian-12 tests) and the host's
# linux-image-amd64; one guest at a time.
add_test(NAME kiln-kernel-change-debian
         COMMAND ${PROJECT_SOURCE_DIR}/tests/vm/kiln-kernel-change-debian.sh ${PROJECT_BINARY_DIR})
set_tests_properties(kiln-kernel-change-debian PROPERTIES LABELS "vm;slow" FIXTURES_REQUIRED
                     "vm;vm-debian" RESOURCE_LOCK vm-guests TIMEOUT 600)
