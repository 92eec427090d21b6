# The installable inbox (include/dtx/inbox.h): libdtx_inbox.so (SONAME libdtx_inbox.so.MAJOR.MINOR)
# and libdtx_inbox.a, built from the objects of dtx_inbox and the broker adapters (dtx_brokers), as
# dtx::inbox / pkg-config dtx-inbox (docs/packaging.md). Only this library links the broker client
# libraries (hiredis, libnats, librdkafka, librabbitmq): libdtx and libdtx_pg stay without them.
# It uses libdtx's exported API (Status, Client, Msg); the barrier's table-name checks
# (dtx_barrier_names, hidden in libdtx) are linked in again, hidden. --no-undefined proves that
# nothing else is missing.
set(DTX_INBOX_PARTS dtx_inbox dtx_brokers dtx_barrier_names)
set(DTX_INBOX_LIBS PkgConfig::HIREDIS PkgConfig::LIBNATS PkgConfig::RDKAFKA PkgConfig::RABBITMQ
                   SQLite::SQLite3 PostgreSQL::PostgreSQL Boost::json spdlog::spdlog fmt::fmt)
set(_dtx_inbox_objects)
foreach(part IN LISTS DTX_INBOX_PARTS)
  list(APPEND _dtx_inbox_objects $<TARGET_OBJECTS:${part}>)
  set_target_properties(${part} PROPERTIES POSITION_INDEPENDENT_CODE ON
                        CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
endforeach()

dtx_add_library(dtx_inbox_shared KIND SHARED OUTPUT dtx_inbox EXPORT inbox
                OBJECTS ${_dtx_inbox_objects})
target_link_libraries(dtx_inbox_shared PUBLIC dtx_lib_shared PRIVATE ${DTX_INBOX_LIBS})
dtx_add_library(dtx_inbox_static KIND STATIC OUTPUT dtx_inbox EXPORT inbox_static
                OBJECTS ${_dtx_inbox_objects})
target_link_libraries(dtx_inbox_static INTERFACE dtx_lib_static)
# Static users link the broker clients by name (their pkg-config targets are not exported).
foreach(lib hiredis nats rdkafka rabbitmq pq)
  target_link_libraries(dtx_inbox_static INTERFACE $<LINK_ONLY:${lib}>)
endforeach()
# In a directory of their own: the in-tree dtx_inbox is libdtx_inbox.a too.
set_target_properties(dtx_inbox_shared dtx_inbox_static PROPERTIES
                      LIBRARY_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/installable
                      ARCHIVE_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/installable)
set(DTX_INBOX_LIBS ${DTX_INBOX_LIBS} PARENT_SCOPE)
