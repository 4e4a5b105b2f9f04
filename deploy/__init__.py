"""Ship a model_dir: model.tar.gz, registration, and endpoint -> batch transform -> local serving."""
