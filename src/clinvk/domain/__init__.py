"""Pure domain: value types, errors and services. Depends only on ports."""
