"""Classify images with a checkpoint, MINDIR or ONNX model and print the top-5 classes. Run with --help."""
import sys

if __name__ == "__main__":
    from src.predict import main

    sys.exit(main())
