# Action module tests beyond the fast unit set.
# The real apt-get --simulate check of UpdateOS's command line takes several seconds (apt
# resolves a whole upgrade): it runs with the slow tests, not in every fast unit run.
if(TARGET agent-modupdate-test)
    set_tests_properties(agent-modupdate-test.test_real_apt_get_simulate PROPERTIES
        LABELS "slow")
endif()
