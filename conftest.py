# Real servers for every test directory (tests/, services/*/tests, libs/*/tests).
pytest_plugins = ["cineamate.stack.testing"]
