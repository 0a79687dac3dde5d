"""Declares what setup.cfg cannot: the C extensions (range coder, fixed-point kernels), and models/
installed as edgecodec.zoo."""
from setuptools import Extension, find_packages, setup

setup(
    packages=find_packages(include=["edgecodec", "edgecodec.*", "firmware_bridge", "firmware_bridge.*"])
    + ["edgecodec.zoo"],
    package_dir={"edgecodec.zoo": "models"},
    ext_modules=[
        Extension(
            "edgecodec.entropy._rangecoder",
            sources=["edgecodec/entropy/_rangecoder.c"],
            extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra"],
        ),
        Extension(
            "edgecodec.models._fixedpoint",
            sources=["edgecodec/models/_fixedpoint.c"],
            extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra"],
        ),
    ],
)
