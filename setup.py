"""Build hook for the one compiled module (Curl-P primitives); all metadata lives in setup.cfg."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mam_client.crypto._curl",
            sources=["mam_client/crypto/_curl.c"],
            extra_compile_args=["-O3", "-std=c99"],
            extra_link_args=["-pthread"],
        )
    ]
)
