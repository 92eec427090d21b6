// DTX_EXPORT marks what libdtx exports: the shared library is built with -fvisibility=hidden, so
// every class and function of the public API (include/dtx/) carries this attribute and nothing else
// is visible to the dynamic linker. With the static library it has no effect.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define DTX_EXPORT [[gnu::visibility("default")]]
#else
#define DTX_EXPORT
#endif
