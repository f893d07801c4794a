from setuptools import find_packages, setup

setup(
    name="cheesecoin",
    version="0.1.0",
    description="A small, readable Bitcoin-inspired cryptocurrency on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    # cheesecoin.data and cheesecoin.web.explorer hold only data files (the
    # default network, the explorer page): listed as data packages so that
    # setuptools neither warns about them nor leaves them out.
    packages=find_packages(exclude=["tests", "tests.*", "bench"])
    + ["cheesecoin.data", "cheesecoin.web.explorer", "twisted.plugins"],
    package_data={
        "cheesecoin.data": ["*.json"],
        "cheesecoin.web.explorer": ["*.html", "*.js", "*.css"],
        "twisted.plugins": ["cheesecoin_plugins.py"],
    },
    include_package_data=True,
    install_requires=["twisted>=22.10", "cryptography>=41"],
    extras_require={
        "test": ["pytest", "pytest-twisted", "pytest-timeout", "hypothesis"],
        "bench": ["matplotlib"],
    },
    entry_points={"console_scripts": ["cheesecoin = cheesecoin.cli.main:main"]},
)
