# Factory tests beyond the unit cases found automatically: the CLI test runs the built `kiln`.
if(TARGET factory-cli-test)
    add_dependencies(factory-cli-test kiln)
endif()
