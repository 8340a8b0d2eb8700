# Source-level checks run as tests.
add_test(NAME check-src COMMAND ${PROJECT_SOURCE_DIR}/scripts/check-src)
set_tests_properties(check-src PROPERTIES LABELS "unit")
