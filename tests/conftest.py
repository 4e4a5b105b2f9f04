"""Shared fixtures live in plugin modules, one per concern."""
pytest_plugins = [
    "tests.fixtures_data",
    "tests.fixtures_aws",
    "tests.fixtures_sdk",
    "tests.fixtures_experiments",
    "tests.fixtures_docker",
]
