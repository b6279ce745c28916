"""Repository-wide test settings. The fixtures and markers come from the homework pytest plugin
(entry point `homework` in pyproject.toml), so `pip install -e .[test]` first."""

import os

from hypothesis import HealthCheck, settings

# ci: reproducible and free of timing flakiness; fuzz: many more examples, for a deliberate hunt.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
# mutants: the ci profile with fewer examples, so `nox -s mutants` fits its budget on 2 cores
settings.register_profile("mutants", parent=settings.get_profile("ci"), max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
