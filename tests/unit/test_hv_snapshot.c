/* hypervisor/snapshot: reading libvirt's <domainsnapshot> XML. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "hypervisor/snapshot.h"

#include <stdlib.h>

static void
clear(struct hv_snapshot *s)
{
    free(s->description);
    free(s->state);
}

static void
test_running_snapshot_has_memory(void **state)
{
    (void)state;
    const char *xml = "<domainsnapshot>\n"
                      "  <name>s1</name>\n"
                      "  <description>after A &amp; B</description>\n"
                      "  <state>running</state>\n"
                      "  <creationTime>1764790000</creationTime>\n"
                      "  <memory snapshot='internal'/>\n"
                      "  <disks><disk name='vda' snapshot='internal'/></disks>\n"
                      "  <domain type='qemu'><name>na-x</name></domain>\n"
                      "</domainsnapshot>\n";
    struct hv_snapshot s = {0};
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(hv_snapshot_parse_xml(xml, &s, &err), 0);
    assert_string_equal(s.description, "after A & B");
    assert_string_equal(s.state, "running");
    assert_int_equal(s.created_s, 1764790000);
    assert_true(s.memory);
    clear(&s);
}

static void
test_shutoff_snapshot_is_disk_only(void **state)
{
    (void)state;
    const char *xml = "<domainsnapshot><name>s2</name><state>shutoff</state>"
                      "<creationTime>5</creationTime><memory snapshot='no'/></domainsnapshot>";
    struct hv_snapshot s = {0};
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(hv_snapshot_parse_xml(xml, &s, &err), 0);
    assert_string_equal(s.description, "");
    assert_string_equal(s.state, "shutoff");
    assert_false(s.memory);
    clear(&s);
}

static void
test_not_a_snapshot_refused(void **state)
{
    (void)state;
    struct hv_snapshot s = {0};
    cleanup_error struct na_error *err = NULL;
    assert_true(hv_snapshot_parse_xml("<domain/>", &s, &err) < 0);
    assert_int_equal(err->code, NA_CODE_HYPERVISOR);
    na_error_clear(&err);
    assert_true(hv_snapshot_parse_xml("not xml", &s, &err) < 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_running_snapshot_has_memory),
        cmocka_unit_test(test_shutoff_snapshot_is_disk_only),
        cmocka_unit_test(test_not_a_snapshot_refused),
    };
    return cmocka_run_group_tests_name("hv_snapshot", tests, NULL, NULL);
}
