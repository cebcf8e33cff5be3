package health.countersign.hapi;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.parser.IParser;
import java.io.InputStream;
import java.io.Reader;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.r4.model.CodeSystem;
import org.hl7.fhir.r4.model.StructureDefinition;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Primary;

/**
 * The validator used for every incoming write and for {@code $validate}: the FHIR core R4 definitions,
 * Countersign's own profiles (differential only; snapshots are generated on first use) and in-memory
 * terminology, with the few newer HL7 Terminology codes we use. Profiles that cannot be found (IG profiles
 * not loaded here) give a warning, not an error.
 */
@Configuration
public class Validation {
	/**
	 * HL7 Terminology codes newer than FHIR R4's bundled code systems, as fragments: AIAST, the label
	 * on every AI-asserted resource, is not in R4's copy of v3-ObservationValue.
	 */
	private static final List<String> NEWER_TERMINOLOGY = List.of("v3-ObservationValue-AIAST.json");

	/** Where our StructureDefinitions are read from, unless {@code HAPI_PROFILES_DIR} says otherwise. */
	private static Path profilesDirectory() throws URISyntaxException {
		String configured = System.getenv("HAPI_PROFILES_DIR");
		if (configured != null && !configured.isBlank()) {
			return Path.of(configured);
		}
		// The jar lies inside the repository: the nearest folder above it holding fhir_profiles/.
		Path jar = Path.of(HapiServer.class.getProtectionDomain().getCodeSource().getLocation().toURI());
		for (Path folder = jar.getParent(); folder != null; folder = folder.getParent()) {
			Path profiles = folder.resolve("fhir_profiles/structure_definitions");
			if (Files.isDirectory(profiles)) {
				return profiles;
			}
		}
		throw new IllegalStateException("No fhir_profiles/structure_definitions above " + jar + "; set HAPI_PROFILES_DIR");
	}

	@Bean
	public PrePopulatedValidationSupport countersignProfiles(FhirContext fhirContext) throws Exception {
		Path directory = profilesDirectory();
		PrePopulatedValidationSupport profiles = new PrePopulatedValidationSupport(fhirContext);
		IParser parser = fhirContext.newJsonParser();
		List<Path> files;
		try (Stream<Path> listing = Files.list(directory)) {
			files = listing.filter(p -> p.toString().endsWith(".json")).sorted().toList();
		}
		if (files.isEmpty()) {
			throw new IllegalStateException("No StructureDefinition JSON in " + directory);
		}
		for (Path file : files) {
			try (Reader reader = Files.newBufferedReader(file)) {
				profiles.addStructureDefinition(parser.parseResource(StructureDefinition.class, reader));
			}
		}
		for (String name : NEWER_TERMINOLOGY) {
			try (InputStream stream = Validation.class.getResourceAsStream("/terminology/" + name)) {
				profiles.addCodeSystem(parser.parseResource(CodeSystem.class, stream));
			}
		}
		return profiles;
	}

	/** Primary: HAPI's DAOs look the validator up by type, so {@code $validate} uses this one too. */
	@Bean
	@Primary
	public FhirInstanceValidator countersignValidator(
			FhirContext fhirContext,
			DefaultProfileValidationSupport coreDefinitions,
			PrePopulatedValidationSupport countersignProfiles) {
		// Ours first, so that a newer code system fragment is found before R4's copy of it.
		ValidationSupportChain chain = new ValidationSupportChain(
				countersignProfiles,
				coreDefinitions,
				new SnapshotGeneratingValidationSupport(fhirContext),
				new InMemoryTerminologyServerValidationSupport(fhirContext),
				new CommonCodeSystemsTerminologyService(fhirContext));
		FhirInstanceValidator validator = new FhirInstanceValidator(chain);
		// A meta.profile we cannot load here (AI transparency, CDS Hooks, IHE BALP IGs) is a warning.
		validator.setErrorForUnknownProfiles(false);
		return validator;
	}
}
