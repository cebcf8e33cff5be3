// Medplum's MemoryRepository with what a HAPI-like server needs underneath the REST layer:
//  - every write (create, update, patch, conditional update: all reach createResourceSync) is
//    validated (structure, invariants, our profiles), has its conditional references resolved and
//    its references checked, whichever path of the library it came through;
//  - transaction(fn): every key written inside fn is remembered as it was, and put back if fn
//    throws, so a Bundle is all-or-nothing; a transaction Bundle defers the reference checks to
//    its end (checkDeferredReferences), so that its entries may refer to each other in any order;
//  - a deleted resource reads as 410 Gone; history is not reversed in place on every read.
import { core, router } from './medplum.mjs';
import { checkReferences, resolveConditionalReferences } from './references.mjs';
import { validate } from './validation.mjs';

export class JournaledRepository extends router.MemoryRepository {
  #journal;
  #deferred;

  /** `publicBase`: absolute references under it are references to this server. */
  constructor(publicBase) {
    super();
    this.publicBase = publicBase;
    /** What the writes being made belong to (a Bundle entry), remembered with deferred checks. */
    this.writeContext = undefined;
  }

  /**
   * Run fn; if it throws, undo every write it made. Nested calls join the outer transaction. With
   * deferReferences, the references of each write are only checked by checkDeferredReferences().
   */
  async transaction(fn, { deferReferences = false } = {}) {
    if (this.#journal) return fn();
    const journal = new Map();
    this.#journal = journal;
    this.#deferred = deferReferences ? [] : undefined;
    try {
      return await fn();
    } catch (error) {
      this.#rollback(journal);
      throw error;
    } finally {
      this.#journal = undefined;
      this.#deferred = undefined;
      this.writeContext = undefined;
    }
  }

  /**
   * Check the references of every write deferred so far, against what is stored now. The error
   * thrown carries `context`: the writeContext of the write whose reference failed.
   */
  checkDeferredReferences() {
    const deferred = this.#deferred ?? [];
    this.#deferred = [];
    for (const { references, self, context } of deferred) {
      try {
        checkReferences(this, references, { publicBase: this.publicBase, self });
      } catch (error) {
        error.context = context;
        throw error;
      }
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
    const references = [];
    validate(resource, undefined, references);
    const id = resource.id ?? this.generateId();
    resolveConditionalReferences(this, references);
    const self = { type: resource.resourceType, id };
    if (this.#deferred) this.#deferred.push({ references, self, context: this.writeContext });
    else checkReferences(this, references, { publicBase: this.publicBase, self });
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

  /** It was stored once and is deleted now. */
  wasDeleted(resourceType, id) {
    return !this.exists(resourceType, id) && (this.history.get(resourceType)?.has(id) ?? false);
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
