"""convlab: learn, train and ship convolutional networks on Amazon SageMaker, or on a laptop."""
__version__ = "0.1.0"
