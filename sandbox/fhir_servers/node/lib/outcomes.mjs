// OperationOutcome bodies and the HTTP status each one stands for.
import { STATUS_CODES } from 'node:http';
import { core } from './medplum.mjs';

/**
 * An error with its HTTP status and OperationOutcome. It extends Medplum's OperationOutcomeError so
 * that one thrown inside the library (a validation failure in the repository) keeps its outcome.
 */
export class HttpError extends core.OperationOutcomeError {
  constructor(status, code, diagnostics, expression) {
    super(withStatusId(status, outcome('error', code, diagnostics, expression)));
    this.status = status;
  }

  /** An error carrying an existing OperationOutcome (several issues) and status. */
  static of(status, operationOutcome) {
    const error = new HttpError(status, 'processing', '');
    error.outcome = withStatusId(status, operationOutcome);
    error.message = operationOutcome.issue?.map(diagnosticsOf).join('; ') ?? '';
    return error;
  }
}

/**
 * Medplum's router turns an error thrown inside it (e.g. by the repository during a PATCH) into
 * its OperationOutcome and reads the HTTP status from the outcome's id: give it the id it knows
 * for our status (removed again before the outcome is sent).
 */
const STATUS_IDS = { 404: 'not-found', 409: 'conflict', 410: 'gone', 412: 'precondition-failed', 422: 'business-rule' };
function withStatusId(status, operationOutcome) {
  const id = STATUS_IDS[status];
  return id ? { ...operationOutcome, id } : operationOutcome;
}

export function outcome(severity, code, diagnostics, expression) {
  const issue = { severity, code, diagnostics };
  if (expression?.length) issue.expression = expression;
  return { resourceType: 'OperationOutcome', issue: [issue] };
}

export const diagnosticsOf = (issue) => issue?.diagnostics ?? issue?.details?.text ?? '';

/** HAPI writes issue.diagnostics; Medplum writes details.text. Give every issue both. */
function withDiagnostics(operationOutcome) {
  const { id: _id, ...rest } = operationOutcome;
  return {
    ...rest,
    issue: (operationOutcome.issue ?? []).map((issue) => ({
      ...issue,
      diagnostics: diagnosticsOf(issue) || undefined,
    })),
  };
}

/** "201 Created", as Bundle.entry.response.status spells it. */
export const statusLine = (status) => `${status} ${STATUS_CODES[status] ?? ''}`.trim();

/** Turn anything thrown by Medplum or by us into [status, OperationOutcome]. */
export function errorResponse(error) {
  if (error instanceof HttpError) return [error.status, withDiagnostics(error.outcome)];
  if (error?.outcome?.resourceType === 'OperationOutcome') {
    return [core.getStatus(error.outcome), withDiagnostics(error.outcome)];
  }
  process.stderr.write(`FHIR test server: unexpected error: ${error?.stack ?? error}\n`);
  return [500, outcome('error', 'exception', `internal error in the FHIR test server: ${error?.message ?? error}`)];
}

/** [status, body] of a router response, with Medplum's outcome ids turned into HTTP statuses. */
export function routerResponse([result, resource]) {
  const status = core.getStatus(result);
  return [status, status >= 400 ? withDiagnostics(result) : (resource ?? withDiagnostics(result))];
}
