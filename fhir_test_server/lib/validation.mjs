// Every resource written is validated against the R4 StructureDefinitions, as HAPI does.
import { core } from './medplum.mjs';
import { HttpError } from './outcomes.mjs';

export function validate(resource, expectedType) {
  if (!resource || typeof resource !== 'object' || Array.isArray(resource)) {
    throw new HttpError(400, 'structure', 'the body must be a FHIR resource');
  }
  if (expectedType && resource.resourceType !== expectedType) {
    throw new HttpError(400, 'invalid', `expected a ${expectedType}, got ${resource.resourceType}`);
  }
  try {
    core.validateResource(resource);
  } catch (error) {
    const issue = error.outcome?.issue?.[0];
    const text = issue?.details?.text ?? issue?.diagnostics ?? 'invalid resource';
    throw new HttpError(400, issue?.code ?? 'invalid', text, issue?.expression);
  }
}
