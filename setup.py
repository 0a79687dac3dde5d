"""Declares the C range coder extension; all other metadata lives in setup.cfg."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "edgecodec.entropy._rangecoder",
            sources=["edgecodec/entropy/_rangecoder.c"],
            extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra"],
        )
    ]
)
