/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Fixed-width types for the ABI. The BPF build takes them from the kernel's
 * UAPI headers; the wasm32 codec is freestanding (no libc, no kernel
 * headers), so it defines the same names itself. Only these five types may
 * appear in weft_abi.h: `long`, `int` and `bool` change size or meaning
 * between bpf (LP64) and wasm32 (ILP32).
 */
#ifndef WEFT_TYPES_H
#define WEFT_TYPES_H

#if defined(__bpf__)
#include <linux/types.h>
#else
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
#endif

_Static_assert(sizeof(__u8) == 1, "__u8 is one byte");
_Static_assert(sizeof(__u16) == 2, "__u16 is two bytes");
_Static_assert(sizeof(__u32) == 4, "__u32 is four bytes");
_Static_assert(sizeof(__u64) == 8, "__u64 is eight bytes");
_Static_assert(_Alignof(__u64) == 8, "__u64 is 8-aligned on bpf and wasm32 alike");

/* bpf_helpers.h defines offsetof as a pointer cast, which is no constant. */
#define WEFT_OFFSETOF(type, member) __builtin_offsetof(type, member)

#endif /* WEFT_TYPES_H */
