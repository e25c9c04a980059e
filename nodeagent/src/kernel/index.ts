// SPDX-License-Identifier: Apache-2.0
export { attachCgroup, attachTc, destroyTcHooks, type Attachment } from "./attach.ts";
export { KernelError, errnoText } from "./errors.ts";
export { BPF_ANY, BPF_EXIST, BPF_NOEXIST, BpfMap, closeFd, openPinnedMap, possibleCpus, type MapShape } from "./maps.ts";
export { BpfObject, type LoadOptions, type MapDefinition } from "./object.ts";
export { createLink, detachLink, linkInfo, mapInfo, objectId, openPinned, pinObject, updateLink, type LinkInfo, type MapInfo } from "./links.ts";
export { interfaceIndex, netnsCookie } from "./netns.ts";
export { RingBufferReader } from "./ringbuf.ts";
export { socketCookie, takeListener } from "./take-socket.ts";
export { TC_ACT_OK, TC_ACT_SHOT, testRun, type TestRunOptions, type TestRunResult } from "./testrun.ts";
