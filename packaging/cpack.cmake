# Debian packages (scripts/package.sh runs `cpack -G DEB` in any build directory): prefix /usr,
# stripped, runtime dependencies from dpkg-shlibdeps.
set(CPACK_PACKAGE_NAME dtx)
set(CPACK_PACKAGE_VENDOR "dtx")
set(CPACK_PACKAGE_CONTACT "dtx maintainers <dtx@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "distributed-transaction coordinator (DTM-compatible) and C++ SDK")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL server runtime inbox dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# A shlibs file in libdtx<soversion>, so packages built against it get the right dependency.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/dtm-labs/dtm")

set(DTX_RUNTIME_PACKAGE libdtx${DTX_SOVERSION})
set(CPACK_DEBIAN_SERVER_PACKAGE_NAME dtx)
set(CPACK_DEBIAN_SERVER_PACKAGE_SECTION net)
set(CPACK_COMPONENT_SERVER_DESCRIPTION
    "dtx server: distributed-transaction coordinator\n Sagas, TCC, XA and transactional messages with \
a DTM-compatible HTTP API, durable on\n embedded SQLite or on PostgreSQL. A systemd unit (dtx.service) \
and /etc/dtx/dtx.conf.")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME ${DTX_RUNTIME_PACKAGE})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
    "dtx C++ SDK (shared libraries)\n libdtx and libdtx_pg: clients of the dtx/DTM coordinator, the \
sub-transaction\n barrier, helpers for participant services.")
# libdtx_inbox apart, so that libdtx's package does not pull the broker client libraries.
set(DTX_INBOX_PACKAGE libdtx-inbox${DTX_SOVERSION})
set(CPACK_DEBIAN_INBOX_PACKAGE_NAME ${DTX_INBOX_PACKAGE})
set(CPACK_DEBIAN_INBOX_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_INBOX_PACKAGE_DEPENDS "${DTX_RUNTIME_PACKAGE} (= ${PROJECT_VERSION})")
# dpkg-shlibdeps must find libdtx.so.0.2 (another package of this build) for libdtx_inbox; the
# dependency on it is the explicit one above.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR}/src/sdk)
set(CPACK_COMPONENT_INBOX_DESCRIPTION
    "dtx C++ SDK, inbox (shared library)\n libdtx_inbox: consumes Redis Streams, NATS JetStream, Kafka or RabbitMQ \
into the\n consumer's SQLite or PostgreSQL database, each message applied exactly once.")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libdtx-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${DTX_RUNTIME_PACKAGE} (= ${PROJECT_VERSION})")
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS
    "${DTX_INBOX_PACKAGE} (= ${PROJECT_VERSION}), libboost-json1.81-dev, libsqlite3-dev, libspdlog-dev, \
libfmt-dev, libpq-dev, libssl-dev, libhiredis-dev, libnats-dev, librdkafka-dev, librabbitmq-dev")
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "dtx C++ SDK (development files)\n Headers, static libraries, CMake package (find_package(dtx)) and \
pkg-config\n files (dtx, dtx-pg, dtx-inbox; dtx::inbox needs libdtx-inbox). Static linking needs the Suggests.")
# /etc/dtx/dtx.conf is a conffile: an upgrade keeps the administrator's changes.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/deb-server/conffiles "/etc/dtx/dtx.conf\n")
set(CPACK_DEBIAN_SERVER_PACKAGE_CONTROL_EXTRA ${CMAKE_CURRENT_BINARY_DIR}/deb-server/conffiles)
include(CPack)
