// The mesh CA's gRPC service (pillion.ca.v1.CertificateService) loaded once from our proto/, for the proxy's
// certificate client and the control server alike. keepCase: messages use the .proto's snake_case field names.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_DIR } from '../config/protos.js';

/** The method's full gRPC path, as DESIGN.md §3 names it. */
export const CREATE_CERTIFICATE_PATH = '/pillion.ca.v1.CertificateService/CreateCertificate';

export interface CreateCertificateRequest {
  csr?: string;
  validity_duration?: number;
}

export interface CreateCertificateResponse {
  cert_chain?: string[];
}

let loaded: grpc.ServiceClientConstructor | undefined;

export function certificateService(): grpc.ServiceClientConstructor {
  if (loaded === undefined) {
    const def = protoLoader.loadSync('pillion/ca/v1/ca.proto', {
      keepCase: true,
      includeDirs: [PROTO_DIR],
      longs: Number,
      defaults: false,
    });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    loaded = (grpc.loadPackageDefinition(def) as any).pillion.ca.v1.CertificateService as grpc.ServiceClientConstructor;
  }
  return loaded;
}
