// FHIRPath constraints (invariants) compiled once and evaluated as HAPI's validator does: a constraint
// holds when its expression yields exactly one `true`; anything else (false, empty, several values)
// breaks it, and an expression that cannot be evaluated is an error too.
import { core } from './medplum.mjs';

const atoms = new Map();
const UCUM = core.toTypedValue('http://unitsofmeasure.org');

/** { key, human, expression, url, atom } for an ElementDefinition.constraint (or Medplum's Constraint). */
export function compileConstraint(constraint, url) {
  const { key, expression } = constraint;
  let atom = atoms.get(expression);
  if (!atom) {
    atom = core.parseFhirPath(expression);
    atoms.set(expression, atom);
  }
  return { key, human: constraint.human ?? constraint.description ?? '', expression, url, atom };
}

/**
 * Evaluate `check` on `typed` ({ type, value }); %resource and %rootResource come from `frame`
 * ({ resource, root }, both typed). Returns undefined when it holds, else an OperationOutcome issue.
 */
export function evaluate(check, typed, path, frame) {
  const variables = { '%context': typed, '%ucum': UCUM, '%resource': frame.resource, '%rootResource': frame.root };
  let result;
  try {
    result = core.evalFhirPathTyped(check.atom, [typed], variables);
  } catch (error) {
    return {
      severity: 'error',
      code: 'processing',
      diagnostics: `Constraint ${check.key} could not be evaluated at ${path}: ${error?.message ?? error} (FHIRPath: ${check.expression})`,
      expression: [path],
    };
  }
  if (result.length === 1 && result[0].value === true) return undefined;
  return constraintIssue(check, path);
}

/** The issue for a broken constraint: key, human text, where it is defined, its FHIRPath, and the path. */
export function constraintIssue(check, path, note = '') {
  return {
    severity: 'error',
    code: 'invariant',
    diagnostics:
      `Constraint failed: ${check.key}: '${check.human}' (defined in ${check.url}; FHIRPath: ${check.expression}` +
      `${note ? `; ${note}` : ''}) at ${path}`,
    expression: [path],
  };
}
