// OperationOutcome bodies and the HTTP status each one stands for.
import { core } from './medplum.mjs';

export class HttpError extends Error {
  constructor(status, code, diagnostics, expression) {
    super(diagnostics);
    this.status = status;
    this.outcome = outcome('error', code, diagnostics, expression);
  }
}

export function outcome(severity, code, diagnostics, expression) {
  const issue = { severity, code, diagnostics };
  if (expression?.length) issue.expression = expression;
  return { resourceType: 'OperationOutcome', issue: [issue] };
}

export const statusOf = (operationOutcome) => core.getStatus(operationOutcome);

export function isSuccess(operationOutcome) {
  return statusOf(operationOutcome) < 400;
}

/** Turn anything thrown by Medplum or by us into [status, OperationOutcome]. */
export function errorResponse(error) {
  if (error instanceof HttpError) return [error.status, error.outcome];
  if (error?.outcome?.resourceType === 'OperationOutcome') return [statusOf(error.outcome), error.outcome];
  return [500, outcome('error', 'exception', 'internal error in the FHIR test server')];
}
