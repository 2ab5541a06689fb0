/* Linked into the sanitizer build of bench only (SAN=1; see the Makefile).
 *
 * Open MPI, PMIx and hwloc load their plugins with dlopen() and unload them
 * with dlclose() in MPI_Finalize. LeakSanitizer reports at exit, when those
 * plugins are gone, so a leak allocated inside one has a stack of
 * "<unknown module>" frames that no suppression in tests/san.supp can name.
 * Open MPI 4.1 has no setting to keep its components loaded (the
 * mca_base_component_disable_dlclose of later versions does not exist in
 * 4.1.4), so this build keeps every library loaded instead: the executable's
 * dlclose() interposes on libc's for every library in the process, and does
 * nothing. Stacks then name the plugin (mca_*.so, libpmix ...), and a
 * suppression can match them; leaks in parbench's own code still fail. */
#include <stddef.h>

int dlclose(void *handle);

int dlclose(void *handle)
{
    (void)handle;
    return 0;
}
