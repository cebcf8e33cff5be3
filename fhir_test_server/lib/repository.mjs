// Medplum's MemoryRepository with what a HAPI-like server needs underneath the REST layer:
//  - every write (create, update, patch, conditional update: all reach createResourceSync) is
//    validated, whichever path of the library it came through;
//  - transaction(fn): every key written inside fn is remembered as it was, and put back if fn
//    throws, so a Bundle is all-or-nothing;
//  - a deleted resource reads as 410 Gone; history is not reversed in place on every read.
import { core, router } from './medplum.mjs';
import { validate } from './validation.mjs';

export class JournaledRepository extends router.MemoryRepository {
  #journal;

  /** Run fn; if it throws, undo every write it made. Nested calls join the outer transaction. */
  async transaction(fn) {
    if (this.#journal) return fn();
    const journal = new Map();
    this.#journal = journal;
    try {
      return await fn();
    } catch (error) {
      this.#rollback(journal);
      throw error;
    } finally {
      this.#journal = undefined;
    }
  }

  #remember(type, id) {
    const key = `${type}/${id}`;
    if (!this.#journal || this.#journal.has(key)) return;
    const history = this.history.get(type)?.get(id);
    this.#journal.set(key, { type, id, resource: this.resources.get(type)?.get(id), history: history && [...history] });
  }

  #rollback(journal) {
    for (const { type, id, resource, history } of journal.values()) {
      if (resource) this.resources.get(type).set(id, resource);
      else this.resources.get(type)?.delete(id);
      if (history) this.history.get(type).set(id, history);
      else this.history.get(type)?.delete(id);
    }
  }

  // The one place the library stores a resource (create, update, patch, conditional *).
  createResourceSync(resource, options, update = false) {
    validate(resource);
    const id = resource.id ?? this.generateId();
    this.#remember(resource.resourceType, id);
    return super.createResourceSync({ ...resource, id }, options, update);
  }

  async deleteResource(resourceType, id, options) {
    this.#remember(resourceType, id);
    return super.deleteResource(resourceType, id, options);
  }

  async expungeResources(resourceType, ids) {
    for (const id of ids) this.#remember(resourceType, id);
    return super.expungeResources(resourceType, ids);
  }

  /** The stored resource itself (no copy) for fast read-only scans, e.g. conditional matching. */
  *storedResources(resourceType) {
    yield* this.resources.get(resourceType)?.values() ?? [];
  }

  exists(resourceType, id) {
    return this.resources.get(resourceType)?.has(id) ?? false;
  }

  currentVersion(resourceType, id) {
    return this.resources.get(resourceType)?.get(id)?.meta?.versionId;
  }

  async readResource(resourceType, id) {
    if (!this.exists(resourceType, id) && this.history.get(resourceType)?.has(id)) {
      throw new core.OperationOutcomeError(core.gone);
    }
    return super.readResource(resourceType, id);
  }

  async readHistory(resourceType, id) {
    const versions = this.history.get(resourceType)?.get(id);
    if (!versions) throw new core.OperationOutcomeError(core.notFound);
    const entry = [...versions].reverse().map((version) => ({ resource: core.deepClone(version) }));
    return { resourceType: 'Bundle', type: 'history', total: entry.length, ...(entry.length ? { entry } : undefined) };
  }

  async readVersion(resourceType, id, versionId) {
    const version = this.history
      .get(resourceType)
      ?.get(id)
      ?.find((v) => v.meta?.versionId === versionId);
    if (!version) throw new core.OperationOutcomeError(core.notFound);
    return core.deepClone(version);
  }
}
