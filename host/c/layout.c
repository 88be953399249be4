/* The layout of struct nbdkit_plugin in the installed <nbdkit-plugin.h>, for the test that
 * checks the shim's #[repr(C)] mirror (host/src/nbdkit_c.rs) against it. */
#include <stddef.h>
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#define OFF(f) { #f, offsetof (struct nbdkit_plugin, f) }

struct rustshim_c_field { const char *name; size_t offset; };

const size_t rustshim_c_plugin_size = sizeof (struct nbdkit_plugin);
const struct rustshim_c_field rustshim_c_plugin_fields[] = {
  OFF(_struct_size), OFF(_api_version), OFF(_thread_model), OFF(name), OFF(longname),
  OFF(version), OFF(description), OFF(load), OFF(unload), OFF(config), OFF(config_complete),
  OFF(config_help), OFF(open), OFF(close), OFF(get_size), OFF(can_write), OFF(can_flush),
  OFF(is_rotational), OFF(can_trim), OFF(_pread_v1), OFF(_pwrite_v1), OFF(_flush_v1),
  OFF(_trim_v1), OFF(_zero_v1), OFF(errno_is_preserved), OFF(dump_plugin), OFF(can_zero),
  OFF(can_fua), OFF(pread), OFF(pwrite), OFF(flush), OFF(trim), OFF(zero),
  OFF(magic_config_key), OFF(can_multi_conn), OFF(can_extents), OFF(extents), OFF(can_cache),
  OFF(cache), OFF(thread_model), OFF(can_fast_zero), OFF(preconnect), OFF(get_ready),
  OFF(after_fork), OFF(list_exports), OFF(default_export), OFF(export_description),
  OFF(cleanup), OFF(block_size),
};
const size_t rustshim_c_plugin_field_count =
  sizeof rustshim_c_plugin_fields / sizeof rustshim_c_plugin_fields[0];
