from setuptools import Extension, find_packages, setup

# The native nonce search (cheesecoin.core.pow uses it when it is built; a machine
# without a C compiler installs and runs with the pure-Python search).
NATIVE = Extension(
    "cheesecoin.core._sha1search",
    sources=["cheesecoin/core/_sha1search.c"],
    extra_compile_args=["-O3"],
    optional=True,
)

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
    ext_modules=[NATIVE],
    # twisted[tls] (pyOpenSSL, service_identity): the encrypted member links of
    # docs/protocol.md section 5.3; pyOpenSSL 25 takes cryptography's keys and certificates.
    install_requires=[
        "twisted[tls]>=22.10",
        "pyOpenSSL>=25.0",
        "cryptography>=41",
        "PyNaCl>=1.5",
        "prometheus_client>=0.16",
    ],
    extras_require={
        "test": ["pytest", "pytest-twisted", "pytest-timeout", "hypothesis"],
        "bench": ["matplotlib"],
        # The formatter and linter (ruff) and the type checker (mypy, with mypy-zope so
        # that it reads Twisted's zope.interface declarations): `make lint`, in `make test`.
        "dev": ["ruff>=0.6", "mypy>=1.10", "mypy-zope>=1.0"],
    },
    entry_points={"console_scripts": ["cheesecoin = cheesecoin.cli.main:main"]},
)
