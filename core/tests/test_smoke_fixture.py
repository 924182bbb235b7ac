from vendo.db import migrations


def test_migrated_kernel_is_current(migrated_kernel):
    kernel = migrated_kernel()
    status = kernel.check_database()
    assert status.up_to_date
    assert "vendo_0009" in status.current
