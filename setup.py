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
            # No contraction of a * b + c into an FMA behind the code's back (gcc's default on aarch64):
            # conv_f32's results must be the same expression on every CPU. fmaf stays an instruction.
            extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra", "-ffp-contract=off", "-fno-math-errno"],
        ),
    ],
)
