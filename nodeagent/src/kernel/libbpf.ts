// SPDX-License-Identifier: Apache-2.0
/**
 * Raw bindings to Debian's libbpf1 through koffi. Only declarations live
 * here; the modules beside this one wrap them with error handling. libbpf 1.x
 * returns -errno from int functions and NULL (errno set) from pointer ones.
 */
import koffi from "koffi";

export const LIBBPF_PATH = process.env.WEFT_LIBBPF ?? "/usr/lib/x86_64-linux-gnu/libbpf.so.1";

let bound: ReturnType<typeof bind> | undefined;

/** The bound functions; loading is deferred so importing never needs libbpf. */
export function libbpf(): ReturnType<typeof bind> {
  bound ??= bind();
  return bound;
}

function bind() {
  const lib = koffi.load(LIBBPF_PATH);
  const libc = koffi.load("libc.so.6");
  const obj = koffi.opaque("bpf_object");
  const prog = koffi.opaque("bpf_program");
  const map = koffi.opaque("bpf_map");
  const link = koffi.opaque("bpf_link");
  const ringBuffer = koffi.opaque("ring_buffer");
  // int (*)(void *ctx, void *data, size_t size): one ring-buffer record; a negative return stops the consume.
  const ringBufferSample = koffi.proto("int ring_buffer_sample_fn(void *ctx, void *data, size_t size)");

  const testRunOpts = koffi.struct("bpf_test_run_opts", {
    sz: "size_t",
    data_in: "void *",
    data_out: "void *",
    data_size_in: "uint32_t",
    data_size_out: "uint32_t",
    ctx_in: "void *",
    ctx_out: "void *",
    ctx_size_in: "uint32_t",
    ctx_size_out: "uint32_t",
    retval: "uint32_t",
    repeat: "int",
    duration: "uint32_t",
    flags: "uint32_t",
    cpu: "uint32_t",
    batch_size: "uint32_t",
  });
  const tcHook = koffi.struct("bpf_tc_hook", {
    sz: "size_t",
    ifindex: "int",
    attach_point: "int",
    parent: "uint32_t",
  });
  const tcOpts = koffi.struct("bpf_tc_opts", {
    sz: "size_t",
    prog_fd: "int",
    flags: "uint32_t",
    prog_id: "uint32_t",
    handle: "uint32_t",
    priority: "uint32_t",
  });

  return {
    types: { obj, prog, map, link, testRunOpts, tcHook, tcOpts, ringBuffer, ringBufferSample },
    objectOpenFile: lib.func("bpf_object *bpf_object__open_file(const char *path, void *opts)"),
    objectLoad: lib.func("int bpf_object__load(bpf_object *obj)"),
    objectClose: lib.func("void bpf_object__close(bpf_object *obj)"),
    findProgram: lib.func("bpf_program *bpf_object__find_program_by_name(bpf_object *obj, const char *name)"),
    findMap: lib.func("bpf_map *bpf_object__find_map_by_name(bpf_object *obj, const char *name)"),
    programFd: lib.func("int bpf_program__fd(bpf_program *prog)"),
    mapFd: lib.func("int bpf_map__fd(bpf_map *map)"),
    mapReuseFd: lib.func("int bpf_map__reuse_fd(bpf_map *map, int fd)"),
    mapPin: lib.func("int bpf_map__pin(bpf_map *map, const char *path)"),
    objGet: lib.func("int bpf_obj_get(const char *path)"),
    mapUpdateElem: lib.func("int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)"),
    mapLookupElem: lib.func("int bpf_map_lookup_elem(int fd, const void *key, void *value)"),
    mapDeleteElem: lib.func("int bpf_map_delete_elem(int fd, const void *key)"),
    mapGetNextKey: lib.func("int bpf_map_get_next_key(int fd, const void *key, void *next_key)"),
    mapUpdateBatch: lib.func(
      "int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, const void *opts)",
    ),
    mapLookupBatch: lib.func(
      "int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32_t *count, const void *opts)",
    ),
    mapDeleteBatch: lib.func("int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32_t *count, const void *opts)"),
    progTestRun: lib.func("int bpf_prog_test_run_opts(int prog_fd, _Inout_ bpf_test_run_opts *opts)"),
    attachCgroup: lib.func("bpf_link *bpf_program__attach_cgroup(bpf_program *prog, int cgroup_fd)"),
    linkDestroy: lib.func("int bpf_link__destroy(bpf_link *link)"),
    tcHookCreate: lib.func("int bpf_tc_hook_create(bpf_tc_hook *hook)"),
    tcHookDestroy: lib.func("int bpf_tc_hook_destroy(bpf_tc_hook *hook)"),
    tcAttach: lib.func("int bpf_tc_attach(bpf_tc_hook *hook, _Inout_ bpf_tc_opts *opts)"),
    tcDetach: lib.func("int bpf_tc_detach(bpf_tc_hook *hook, bpf_tc_opts *opts)"),
    numPossibleCpus: lib.func("int libbpf_num_possible_cpus(void)"),
    // BPF ring buffers (the flow events): a consumer over the map's mmapped pages, read without blocking.
    ringBufferNew: lib.func("ring_buffer *ring_buffer__new(int map_fd, ring_buffer_sample_fn *sample_cb, void *ctx, const void *opts)"),
    ringBufferConsume: lib.func("int ring_buffer__consume(ring_buffer *rb)"),
    ringBufferFree: lib.func("void ring_buffer__free(ring_buffer *rb)"),
    // Introspection of an opened object, for the layout check against the codec.
    objectBtf: lib.func("void *bpf_object__btf(bpf_object *obj)"),
    btfFindByNameKind: lib.func("int btf__find_by_name_kind(void *btf, const char *name, uint32_t kind)"),
    btfResolveSize: lib.func("int64_t btf__resolve_size(void *btf, uint32_t type_id)"),
    mapKeySize: lib.func("uint32_t bpf_map__key_size(bpf_map *map)"),
    mapValueSize: lib.func("uint32_t bpf_map__value_size(bpf_map *map)"),
    mapMaxEntries: lib.func("uint32_t bpf_map__max_entries(bpf_map *map)"),
    mapType: lib.func("int bpf_map__type(bpf_map *map)"),
    programExpectedAttachType: lib.func("int bpf_program__expected_attach_type(bpf_program *prog)"),
    objGetInfoByFd: lib.func("int bpf_obj_get_info_by_fd(int fd, _Inout_ uint8_t *info, _Inout_ uint32_t *len)"),
    // Links by fd: created, pinned, reopened, updated and detached without libbpf's bpf_link objects,
    // so a link made by an earlier agent process is handled exactly like one made by this one.
    linkCreate: lib.func("int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)"),
    linkUpdate: lib.func("int bpf_link_update(int link_fd, int new_prog_fd, const void *opts)"),
    linkDetach: lib.func("int bpf_link_detach(int link_fd)"),
    objPin: lib.func("int bpf_obj_pin(int fd, const char *path)"),
    close: libc.func("int close(int fd)"),
    mount: libc.func("int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)"),
    // For SO_NETNS_COOKIE (kernel/netns.ts): the cookie of the agent's network namespace.
    socket: libc.func("int socket(int domain, int type, int protocol)"),
    getsockopt: libc.func("int getsockopt(int fd, int level, int optname, _Out_ uint8_t *optval, _Inout_ uint32_t *optlen)"),
    getsockname: libc.func("int getsockname(int fd, _Out_ uint8_t *addr, _Inout_ uint32_t *len)"),
    // A descriptor of another process (kernel/take-socket.ts): the L7 proxy's listener, for the sk_lookup sockmap.
    pidfdOpen: libc.func("int pidfd_open(int pid, unsigned int flags)"),
    pidfdGetfd: libc.func("int pidfd_getfd(int pidfd, int targetfd, unsigned int flags)"),
    // An interface's index in the caller's network namespace (an ioctl on a socket there), unlike /sys/class/net.
    ifNameToIndex: libc.func("unsigned int if_nametoindex(const char *ifname)"),
  };
}
