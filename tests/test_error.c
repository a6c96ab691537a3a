/* ot_strerror and ot_err_name cover every code the runtime returns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "otter/otter.h"

static void every_code_has_a_name(void **state)
{
    (void)state;
#define X(code, text)                              \
    assert_string_equal(ot_strerror(-code), text); \
    assert_string_equal(ot_err_name(-code), #code);
    OT_ERRNO_MAP(X)
#undef X
    assert_string_equal(ot_strerror(0), "success");
    assert_string_equal(ot_strerror(-99999), "unknown error");
    assert_string_equal(ot_err_name(-99999), "UNKNOWN");
    assert_string_equal(ot_version(), "0.1.0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(every_code_has_a_name)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
