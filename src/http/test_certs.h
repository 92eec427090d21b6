// Test helper: a private CA and a server certificate for 127.0.0.1 / localhost, made with the
// `openssl` command line into a directory (tests of TLS; never used by the server itself).
#pragma once

#include <cstdlib>
#include <fstream>
#include <string>

namespace dtx::http::testing {

struct TestCerts {
  std::string ca;          // the CA certificate (PEM): pass as a CA file to trust the server
  std::string cert;        // the server certificate (PEM), signed by the CA
  std::string key;         // its private key (PEM)
  std::string other_ca;    // a second CA that signed nothing here (a wrong --ca-file)
  std::string wrong_cert;  // signed by the CA for the name other.test only (host name mismatch)
  std::string wrong_key;
  bool ok = false;
};

// Makes the files in `dir` (which must exist). ok is false when openssl failed.
inline TestCerts MakeTestCerts(const std::string& dir) {
  TestCerts c;
  c.ca = dir + "/ca.pem";
  c.cert = dir + "/server.pem";
  c.key = dir + "/server.key";
  c.other_ca = dir + "/other-ca.pem";
  c.wrong_cert = dir + "/wrong.pem";
  c.wrong_key = dir + "/wrong.key";
  {
    std::ofstream ext(dir + "/ext.cnf");
    ext << "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
           "extendedKeyUsage=serverAuth\n";
    std::ofstream wrong(dir + "/wrong.cnf");
    wrong << "subjectAltName=DNS:other.test\nbasicConstraints=CA:FALSE\n";
  }
  const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
  const std::string q = " >/dev/null 2>&1";
  const std::string cmds[] = {
      "openssl req -x509" + ec + "-keyout " + dir + "/ca.key -out " + c.ca +
          " -days 3 -subj '/CN=dtx test CA'" + q,
      "openssl req -x509" + ec + "-keyout " + dir + "/other-ca.key -out " + c.other_ca +
          " -days 3 -subj '/CN=dtx other CA'" + q,
      "openssl req" + ec + "-keyout " + c.key + " -out " + dir +
          "/server.csr -subj '/CN=localhost'" + q,
      "openssl x509 -req -in " + dir + "/server.csr -CA " + c.ca + " -CAkey " + dir +
          "/ca.key -CAcreateserial -out " + c.cert + " -days 3 -extfile " + dir + "/ext.cnf" + q,
      "openssl req" + ec + "-keyout " + c.wrong_key + " -out " + dir +
          "/wrong.csr -subj '/CN=other.test'" + q,
      "openssl x509 -req -in " + dir + "/wrong.csr -CA " + c.ca + " -CAkey " + dir +
          "/ca.key -CAcreateserial -out " + c.wrong_cert + " -days 3 -extfile " + dir +
          "/wrong.cnf" + q,
  };
  for (const std::string& cmd : cmds) {
    if (std::system(cmd.c_str()) != 0) return c;
  }
  c.ok = true;
  return c;
}

}  // namespace dtx::http::testing
