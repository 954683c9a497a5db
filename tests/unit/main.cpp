// SPDX-License-Identifier: MIT
// doctest runner for the unit tests.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
