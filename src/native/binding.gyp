{
  "targets": [
    {
      "target_name": "pillion_native",
      "sources": ["memory.cc", "original_dst.cc", "accept_reserve.cc"],
      "cflags_cc": ["-O2", "-Wno-cast-function-type"]
    }
  ]
}
