# `kiln build` end to end on the Debian 12 base image (tests/vm/kiln-build-debian.sh): needs the
# debian-12 image (fixture vm-debian), one guest at a time.
add_test(NAME kiln-build-debian COMMAND ${PROJECT_SOURCE_DIR}/tests/vm/kiln-build-debian.sh
         ${PROJECT_BINARY_DIR})
set_tests_properties(kiln-build-debian PROPERTIES LABELS "vm;slow" FIXTURES_REQUIRED "vm;vm-debian"
                     RESOURCE_LOCK vm-guests TIMEOUT 1200)
