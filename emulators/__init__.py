"""Local HTTP emulators of the ServiceTrade and Procore APIs (demo, tests, benchmarks); see README.md."""
