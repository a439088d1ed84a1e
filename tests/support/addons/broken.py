"""A user's addon (`-s`) for the tests that fails as it loads."""

import no_such_module_anywhere  # noqa: F401
